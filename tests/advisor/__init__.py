"""Tests of tradelab.advisor (a package so test module names never collide with other test folders)."""
