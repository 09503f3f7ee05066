"""Operations: one look at every family (status) and the setup check (doctor)."""
