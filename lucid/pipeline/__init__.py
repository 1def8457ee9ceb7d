"""What happens to a recording's bytes: resumable ingest, chunking, codecs and the per-chunk
stages up to the seal.
"""
