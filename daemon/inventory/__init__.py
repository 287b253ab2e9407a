"""The domain core: plain values in, plain values out. No I/O, no clock.

Everything that needs the time takes ``now`` as an argument.
"""
