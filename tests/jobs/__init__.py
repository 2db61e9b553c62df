"""The five jobs end to end."""
