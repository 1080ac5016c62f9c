//! Public EMV MPM payloads and a CRC helper, shared by the tests of the codec and of the
//! campus mapping (`domain::campus_qr`).

use super::crc16_ccitt_false;

/// EMVCo MPM v1 specification example (appendix); also the reference vector in the test
/// suites of juanroman/emvqr (C#), dongri/emv-qrcode (Go) and exemvi (Elixir).
pub(crate) const EMVCO: &str = "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412340603***0708A60086670902ME91320016A0112233449988770708123456786304A13A";
/// Banco Central do Brasil, Pix BR Code manual: the official static example (no tag 01).
pub(crate) const PIX_MIN: &str = "00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D";
/// Fuller BR Code from a public Pix library's tests: primitive MAI 04, two account
/// templates, postal code 61, unreserved template 80.
pub(crate) const PIX_FULL: &str = "00020104141234567890123426580014BR.GOV.BCB.PIX0136123e4567-e12b-12d1-a456-42665544000027300012BR.COM.OUTRO011001234567895204000053039865406123.455802BR5917NOME DO RECEBEDOR6008BRASILIA61087007490062190515RP12345678-201980390012BR.COM.OUTRO01190123.ABCD.3456.WXYZ6304AD38";
/// dongri/emv-qrcode README output: primitive MAI 13 and 04 (JCB, Mastercard ranges).
pub(crate) const DONGRI: &str = "0002010102121313JCB12345678900416MASTER12345678905204531153033925407999.1235802JP5906DONGRI6005TOKYO62240104hoge0504fuga0704piyo6304C343";

/// `body` + "6304" + its CRC.
pub(crate) fn with_crc(body: &str) -> String {
    let covered = format!("{body}6304");
    format!("{covered}{:04X}", crc16_ccitt_false(covered.as_bytes()))
}

/// The smallest valid body: 00, one primitive MAI (02), 52, 53, 58, 59, 60. 57 characters.
pub(crate) const MIN_BODY: &str = concat!(
    "000201",
    "02164111111111111111",
    "52045812",
    "5303156",
    "5802CN",
    "5901X",
    "6001Y"
);
