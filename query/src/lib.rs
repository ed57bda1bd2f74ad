//! Ask a trace: a DataFusion session over a trace path.
