DROP TABLE orders;
DROP TABLE dynamic_qr_codes;
