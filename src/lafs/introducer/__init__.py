"""lafs.introducer"""
