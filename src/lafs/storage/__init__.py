"""lafs.storage"""
