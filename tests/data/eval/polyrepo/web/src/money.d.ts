export declare function money(cents: number, currency?: string): unknown;
