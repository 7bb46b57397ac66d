"""The shared layer every app may import: production lines and their stations, user roles,
permissions, station tokens, and the one error type (see shared/ARCHITECTURE.md)."""
