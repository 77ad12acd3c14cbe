"""Helpers every part of tfprune uses: argument checks, atomic files, tables, progress lines."""
