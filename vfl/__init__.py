"""Pure algorithms of vflchain: numpy arrays and ciphertexts in, numpy arrays and
ciphertexts out. No I/O, no network, no chain (see DESIGN.md)."""
