//! keyquorum node
