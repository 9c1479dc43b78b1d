"""`vflchain explorer`: a read-only local web app over the audit contract and run directories.

- `source`: which chain (a state directory, its server while a job runs, or a JSON-RPC URL) and
  the contract's events, read incrementally from the last block seen and cached;
- `runs`: run directories (`--runs`, uploads) audited against the cached history, and the data
  their charts plot;
- `uploads`: what the Verify page accepts (size limits, zip checks, a temporary directory only);
- `pages`: the HTML, every value from the chain or a file escaped;
- `app`: the Starlette application (routes, JSON endpoints, security headers) and `serve`.

It holds no key and sends no transaction. See docs/explorer.md.
"""
