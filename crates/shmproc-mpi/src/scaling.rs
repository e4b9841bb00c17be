//! The plan past one machine, on paper (filled in from the bench).
