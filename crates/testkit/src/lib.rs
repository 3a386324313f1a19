//! keyquorum testkit
