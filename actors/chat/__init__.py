"""The chat core: protocol, sessions, rooms, and the Redis broker that orders them."""
