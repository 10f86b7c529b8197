"""Teams: agreement between annotators, imported annotations, review and team figures."""
