"""lafs.client"""
