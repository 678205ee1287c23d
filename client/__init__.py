"""Client library and command line: keys, encrypt, send, decrypt."""
