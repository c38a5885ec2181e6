"""Reading Tread.fi: the HTTP client (deadline, size cap), payload decoding into the
snapshot, and the order of answers in time."""
