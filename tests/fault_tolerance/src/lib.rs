//! fault_tolerance: helpers for the fault drills (being built).
