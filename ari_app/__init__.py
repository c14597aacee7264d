"""The Stasis application and its typed ARI client."""
