def iterate(func, start):
    while True:
        yield start
        try:
            start = func(start)
        except StopIteration:
            break
