DROP TABLE static_qr_codes;
