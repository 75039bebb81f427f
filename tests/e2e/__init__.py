"""End-to-end tests: the whole stack, user paths against ground truth, the board in a browser."""
