//! keyquorum wire
