"""Orient: the resolved session that later phases inherit."""
