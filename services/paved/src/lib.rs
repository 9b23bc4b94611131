//! paved
