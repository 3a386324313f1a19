//! keyquorum client
