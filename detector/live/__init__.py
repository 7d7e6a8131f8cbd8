"""The sidecar service's moving parts: following logs, window state, storage, metrics."""
