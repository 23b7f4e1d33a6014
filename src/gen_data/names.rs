//! Word lists for realistic synthetic Chinese names, places and documents.
//!
//! The places match the division codes the identifier generators draw from, so a generated
//! address, division code and identifier agree with one another.

/// (division code, province, city, district); city empty for municipalities.
pub(super) const PLACES: &[(&str, &str, &str, &str)] = &[
    ("110105", "北京市", "", "朝阳区"),
    ("110108", "北京市", "", "海淀区"),
    ("120101", "天津市", "", "和平区"),
    ("310104", "上海市", "", "徐汇区"),
    ("310115", "上海市", "", "浦东新区"),
    ("320102", "江苏省", "南京市", "玄武区"),
    ("330106", "浙江省", "杭州市", "西湖区"),
    ("340104", "安徽省", "合肥市", "蜀山区"),
    ("370202", "山东省", "青岛市", "市南区"),
    ("420106", "湖北省", "武汉市", "武昌区"),
    ("440106", "广东省", "广州市", "天河区"),
    ("440305", "广东省", "深圳市", "南山区"),
    ("500103", "重庆市", "", "渝中区"),
    ("510104", "四川省", "成都市", "锦江区"),
    ("610113", "陕西省", "西安市", "雁塔区"),
    ("650102", "新疆维吾尔自治区", "乌鲁木齐市", "天山区"),
];

/// Common surnames, some compound ones, and 𠮷 (outside the Basic Multilingual Plane), so
/// consumers that split UTF-16 units are caught by generated data.
pub(super) const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "高", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "欧阳",
    "司马", "诸葛", "上官", "𠮷",
];

/// Given-name characters, with one rare character outside the BMP (𬌗).
pub(super) const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "玉", "兰", "建", "国", "志", "文", "𬌗",
];

pub(super) const TRADE_NAMES: &[&str] = &[
    "星河",
    "华信",
    "远航",
    "鼎盛",
    "瑞丰",
    "恒通",
    "金桥",
    "博远",
    "天成",
    "嘉禾",
    "宏图",
    "中科",
    "汇丰源",
    "新启点",
    "万象",
];

pub(super) const INDUSTRIES: &[&str] = &[
    "科技",
    "贸易",
    "建设工程",
    "餐饮管理",
    "物流",
    "食品",
    "医药",
    "文化传媒",
    "电子商务",
    "环保科技",
    "房地产开发",
    "信息技术",
];

pub(super) const FORMS: &[&str] = &["有限公司", "有限责任公司", "股份有限公司"];

pub(super) const ROADS: &[&str] = &[
    "建国路",
    "人民路",
    "解放路",
    "中山路",
    "长安街",
    "学院路",
    "科技园路",
    "滨江大道",
    "和平路",
    "新华路",
];

pub(super) const FACTS: &[&str] = &[
    "经营超过保质期的食品，违反《中华人民共和国食品安全法》第三十四条。",
    "未按规定公示年度报告，隐瞒真实情况、弄虚作假。",
    "发布虚假广告，对商品的性能、功能作虚假宣传。",
    "未取得许可擅自从事经营活动。",
    "拒不履行生效法律文书确定的给付义务。",
    "虚开增值税专用发票，情节严重。",
];

pub(super) const LICENCE_TYPES: &[&str] = &[
    "食品经营许可证",
    "道路运输经营许可证",
    "排污许可证",
    "建筑业企业资质证书",
];
