"""The development stack, its demo data, the embedded Valkey and the fakes."""
