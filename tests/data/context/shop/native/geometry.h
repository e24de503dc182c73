/* Geometry primitives. */
typedef struct { double x; double y; } Point;

/* Euclidean distance between two points. */
double distance(Point a, Point b);
