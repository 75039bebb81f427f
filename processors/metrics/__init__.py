"""Pure metric functions and small classes: no Faust, Kafka or I/O. Each names its definition."""
