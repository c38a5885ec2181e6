"""The running daemon: the poll that wires source, core, store and notify together, the
rule source, leadership, health endpoints, the leverage actor and the service loop."""
