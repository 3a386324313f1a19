//! Sharp tools. Temporary reconstruction ("export") of a group secret.
