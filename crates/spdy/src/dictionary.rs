//! The SPDY/3 header compression dictionary (SPDY Protocol Draft 3,
//! section 2.6.10.1). Both zlib contexts of a connection start from it: a
//! header block's zlib stream names it by its Adler-32, 0xE3C6A7C2, and an
//! inflater asks for it before the first block's data.

/// The 1423 bytes of the SPDY/3 dictionary: length-prefixed HTTP words,
/// then a run of common header values.
pub const DICTIONARY: &[u8; 1423] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03p\
    ut\x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\
    \x0eaccept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\
    \x00\x00\x00\x0daccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\
    \x00\x0dauthorization\x00\x00\x00\x0dcache-control\x00\x00\x00\x0aconnection\x00\
    \x00\x00\x0ccontent-base\x00\x00\x00\x10content-encoding\x00\x00\x00\x10content-\
    language\x00\x00\x00\x0econtent-length\x00\x00\x00\x10content-location\x00\x00\
    \x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\x00\x00\x00\x0ccontent-type\x00\
    \x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\x00\x00\x07expire\
    s\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\x00\x00\
    \x11if-modified-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\
    \x00\x00\x13if-unmodified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08loca\
    tion\x00\x00\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-auth\
    enticate\x00\x00\x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07\
    referer\x00\x00\x00\x0bretry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\
    \x00\x00\x07trailer\x00\x00\x00\x11transfer-encoding\x00\x00\x00\x07upgrade\x00\
    \x00\x00\x0auser-agent\x00\x00\x00\x04vary\x00\x00\x00\x03via\x00\x00\x00\x07war\
    ning\x00\x00\x00\x10www-authenticate\x00\x00\x00\x06method\x00\x00\x00\x03get\
    \x00\x00\x00\x06status\x00\x00\x00\x06200\x20OK\x00\x00\x00\x07version\x00\x00\
    \x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\x0aset-coo\
    kie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin10010120120220520630030230330\
    4305306307402405406407408409410411412413414415416417502504505203\x20Non-Authorit\
    ative\x20Information204\x20No\x20Content301\x20Moved\x20Permanently400\x20Bad\
    \x20Request401\x20Unauthorized403\x20Forbidden404\x20Not\x20Found500\x20Internal\
    \x20Server\x20Error501\x20Not\x20Implemented503\x20Service\x20UnavailableJan\x20\
    Feb\x20Mar\x20Apr\x20May\x20Jun\x20Jul\x20Aug\x20Sept\x20Oct\x20Nov\x20Dec\x2000\
    :00:00\x20Mon,\x20Tue,\x20Wed,\x20Thu,\x20Fri,\x20Sat,\x20Sun,\x20GMTchunked,tex\
    t/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/\
    plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset\
    =iso-8859-1,utf-,*,enq=0.";

/// The dictionary's Adler-32, as written in the zlib header of the first
/// header block of each direction.
pub const DICTIONARY_ADLER32: u32 = 0xE3C6_A7C2;
