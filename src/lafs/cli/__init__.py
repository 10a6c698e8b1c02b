"""lafs.cli"""
