"""wipwatch's tests: unit/ (no servers), integration/ (real servers), e2e/ (whole stack); rigs here."""
