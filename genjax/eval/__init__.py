"""Evaluation: a feature classifier (`classifier`), metrics on its features (`metrics`,
`coverage`), the samples -> numbers pipeline (`evaluate`) and pictures / tables (`pictures`)."""
