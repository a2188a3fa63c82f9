"""archlab.train"""
