"""The Core API's workers: job functions, their providers and store, and one arq settings class per queue."""
