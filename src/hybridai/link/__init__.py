"""The secure connection layer: PKI, mTLS contexts, artifact signing and resilient transfer.

Everything an edge needs to dial out to the cloud safely over an unreliable network.
"""
