//! batchline: the binary. Only wires (being built).

fn main() {}
