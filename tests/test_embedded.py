def test_x():
    import sense311.embedded
