"""DNS backends behind :class:`providers.base.DnsProvider`."""
