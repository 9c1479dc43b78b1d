"""The on-chain half of vflchain: the audit contract's client, chain backends, audit."""
