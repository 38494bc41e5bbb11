//! Report tables and JSON output shared by commands.
