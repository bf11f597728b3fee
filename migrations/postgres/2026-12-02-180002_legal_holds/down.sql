DROP TABLE legal_hold_withheld;
DROP TABLE legal_holds;
