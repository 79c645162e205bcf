"""MQTT subscriber → decoders → validation → batch writer → dead letters."""
