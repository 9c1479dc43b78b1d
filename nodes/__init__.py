"""The party runtime: guest and host nodes, transport, job orchestration, CLI."""
