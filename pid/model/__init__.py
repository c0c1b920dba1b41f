"""The PiD network: MM-DiT patch blocks, PiT pixel blocks, the LQ adapter and its gates, positions."""
