"""What makes tampering evident: Merkle trees and leaves, the sealed leaf list, the signed
ledger, checkpoints, anchors, verified restore.
"""
