DROP TABLE element_versions;
DROP TABLE elements;
