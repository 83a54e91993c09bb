//! workload: the simulations (being built).
